"""Pipeline step 4 as one stage: the search on a trained run, for ``stnas search`` and ``stnas run``.

:func:`run_search` is the stage both commands call: it takes the run directories' locks (the
search writes their proxy caches), assembles the scorer (one run's :class:`Proxy`, a
few-shot pair's :class:`stnas.proxy.few_shot.FewShotScorer` or an ensemble's
:class:`stnas.proxy.ensemble.EnsembleScorer`), runs the search and keeps the latency table
it used next to it. :func:`search_trained` is ``stnas search``: it reads the runs' configs
with the user's settings applied and checks them (a few-shot pair, an ensemble, the
constraints, the latency budgets) before any weights load, then calls :func:`run_search`
in the process group.

:func:`proxy_for_run` is the one place a run's config becomes a :class:`Proxy`.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stnas.core import dist
from stnas.core.errors import ConfigError
from stnas.core.rundir import RunDir
from stnas.pipeline.config import ON_EXISTING_RUN, apply_layers, load_run_config
from stnas.pipeline.inputs import check_scoring
from stnas.pipeline.settings import data_spec, proxy_settings, sharing
from stnas.proxy.ensemble import EnsembleScorer
from stnas.proxy.few_shot import FewShotScorer
from stnas.proxy.scorer import Proxy
from stnas.search.evolution import check_constraints, search
from stnas.search.history import SearchResult
from stnas.space.catalog import run_space
from stnas.space.sampling import parse_split
from stnas.train.engine import use_amp, use_channels_last


def proxy_for_run(run_dir: str | Path, cfg: dict | None = None, mode: str | None = None,
                  ctx: dist.Context | None = None, progress: bool = False) -> Proxy:
    """The proxy of a trained run.

    Args:
        cfg: the run's resolved config, possibly with scoring settings changed (default:
            its ``config.yaml``).
        mode: in place of ``proxy.mode``.
        ctx: the process context (default: one process on ``cfg["device"]``).
        progress: show a tqdm bar over evaluations (rank 0).
    """
    cfg = cfg if cfg is not None else load_run_config(run_dir)
    ctx = ctx or dist.Context(device=dist.resolve_device(cfg["device"]))
    recipe = cfg["supernet"]
    return Proxy(run_dir, run_space(run_dir), proxy_settings(cfg, mode), data_spec(cfg), **sharing(cfg),
                 amp=use_amp(recipe, ctx.device), channels_last=use_channels_last(recipe), ctx=ctx,
                 progress=progress)


def search_config(run_dir: str | Path, layers: Sequence[dict] = ()) -> dict:
    """The config of a trained run with the user's ``layers``
    (``stnas.pipeline.config.user_layers``) applied; only ``ON_EXISTING_RUN["search"]["change"]`` keys may change."""
    return apply_layers(load_run_config(run_dir), list(layers), allowed=ON_EXISTING_RUN["search"]["change"],
                        context="after supernet training")


def check_children(runs: Sequence[str | Path]) -> tuple[int, dict[bool, Path]]:
    """(edge, {False: off run, True: on run}) of a few-shot pair, or ConfigError naming what
    is wrong: not two runs, a run without ``supernet.split``, splits of different edges or
    of the same side, or children of different spaces, seeds or data."""
    runs = [Path(r) for r in runs]
    if len(runs) != 2:
        raise ConfigError(f"a few-shot search takes the two children of one split (E:off and E:on), "
                          f"got {len(runs)} run directories")
    edges, sides, cfgs, spaces = set(), {}, [], []
    for run in runs:
        cfg, space = load_run_config(run), run_space(run)
        split = cfg["supernet"].get("split")
        if split is None:
            raise ConfigError(f"{run} was not trained with supernet.split: a few-shot search takes two "
                              f"children trained with supernet.split=E:off and E:on")
        edge, on = parse_split(split, len(space.branch_edges))
        if on in sides:
            raise ConfigError(f"{sides[on]} and {run} were both trained on side E:{'on' if on else 'off'}: "
                              f"a few-shot search needs one child of each side")
        edges.add(edge)
        sides[on] = run
        cfgs.append(cfg)
        spaces.append(space.fingerprint)
    if len(edges) > 1:
        raise ConfigError(f"{runs[0]} and {runs[1]} split different branch edges ({sorted(edges)}): "
                          f"a few-shot pair splits one edge")
    for what, a, b in (("search space", *spaces), ("seed", cfgs[0]["seed"], cfgs[1]["seed"]),
                       ("data settings", cfgs[0]["data"], cfgs[1]["data"])):
        if a != b:
            raise ConfigError(f"{runs[0]} and {runs[1]} differ in their {what}: the children of a few-shot "
                              f"pair must be scored on the same search-val images")
    return edges.pop(), sides


def scorer_for(runs: dict, ctx: dist.Context, edge: int | None = None):
    """The scorer of ``runs`` ({key: (run dir, its config)}): one run's proxy (key None),
    a few-shot pair's (keys False/True, split ``edge``) or an ensemble's (keys 0, 1, ...)."""
    proxies = {k: proxy_for_run(r, c, ctx=ctx) for k, (r, c) in runs.items()}
    if edge is not None:
        return FewShotScorer(proxies, edge)
    if len(proxies) > 1:
        return EnsembleScorer(list(proxies.values()))
    return proxies[None]


def run_search(cfg: dict, runs: dict, out_dir: str | Path, ctx: dist.Context, *, edge: int | None = None,
               seed: int | None = None, latency: tuple = (None, {}), info: dict | None = None,
               verify: bool = True):
    """The search stage: the search of ``cfg["search"]`` into ``out_dir`` scored by the
    scorer of ``runs`` (:func:`scorer_for`), with the runs' locks held; returns
    (SearchResult, scorer). Collective under torchrun (only rank 0 writes).

    Args:
        cfg: the config of the searched run (its search, seed and progress settings).
        seed: the search's seed (default ``cfg["seed"]``).
        latency: (the latency predictor, its search.json fields with the margin its budgets keep:
            ``stnas.pipeline.latency.search_predictor``), or (None, {}).
        info: search.json fields ahead of the proxy's (e.g. the run directory).
        verify: check the weights each run's proxy reads before any scoring
            (``stnas.pipeline.inputs.check_scoring``); False where the caller did, or wrote them.
    """
    out_dir = Path(out_dir)
    predictor, lat_info = latency
    margin = 0.0
    if predictor is not None:
        from stnas.pipeline.latency import margin_of
        margin = margin_of(lat_info)
    with ExitStack() as stack:
        for run_dir, _ in runs.values():  # the search writes the runs' proxy caches
            stack.enter_context(RunDir(run_dir).lock(ctx.is_main))
        for run_dir, run_cfg in runs.values() if verify else ():
            check_scoring(run_dir, run_cfg)
        scorer = scorer_for(runs, ctx, edge)
        result = search(scorer.space, scorer.score, cfg["search"], out_dir if ctx.is_main else None,
                        seed=cfg["seed"] if seed is None else seed,
                        progress=ctx.is_main and cfg["supernet"].get("progress", True),
                        info={**(info or {}), "proxy_mode": scorer.mode, "proxy_metric": scorer.metric,
                              "proxy_settings": scorer.settings, **lat_info},
                        screen=lambda archs: scorer.score(archs, samples=1), latency=predictor, latency_margin=margin)
        if predictor is not None and ctx.is_main:
            from stnas.pipeline.latency import keep_table
            keep_table(predictor, out_dir)
    return result, scorer


@dataclass
class Searched:
    """What :func:`search_trained` did: the result (None on ranks other than 0), the scorer's
    mode and metric, the config searched with, the output folder and whether latency was
    predicted."""

    result: SearchResult | None
    mode: str
    metric: str
    cfg: dict
    out_dir: Path
    latency: bool


def _scoring_runs(run_dir: Path, cfg: dict, layers: Sequence[dict], few_shot, ensemble) -> tuple[dict, int | None]:
    """({key: (run dir, config)}, few-shot edge or None) of a search, every run's config read
    and checked before any weights load."""
    if few_shot is not None and ensemble:
        raise ConfigError("--few-shot and --ensemble do not combine: choose one")
    if ensemble:
        sides = {i: Path(r) for i, r in enumerate([run_dir, *ensemble])}
        if len(set(map(str, sides.values()))) < len(sides):
            raise ConfigError("--ensemble: a run is named twice")
        return {i: (r, cfg if i == 0 else search_config(r, layers)) for i, r in sides.items()}, None
    if few_shot is not None:
        edge, sides = check_children([run_dir, few_shot])
        return {on: (r, cfg if r == run_dir else search_config(r, layers)) for on, r in sides.items()}, edge
    return {None: (run_dir, cfg)}, None


def search_trained(run_dir: str | Path, layers: Sequence[dict] = (), *, few_shot: str | Path | None = None,
                   ensemble: Sequence[str | Path] = (), out_dir: str | Path | None = None,
                   seed: int | None = None) -> Searched:
    """``stnas search``: searches a trained run (module docstring) in this process's group.

    Args:
        layers: the user's settings (``stnas.pipeline.config.user_layers``), applied to every run's config.
        few_shot: the other child of a few-shot pair (``run_dir`` is one).
        ensemble: the other runs of an ensemble.
        out_dir: default ``RUN_DIR/search``.
        seed: the search's seed (default: the run's).
    """
    run_dir = Path(run_dir)
    cfg = search_config(run_dir, layers)
    runs, edge = _scoring_runs(run_dir, cfg, layers, few_shot, ensemble)
    se = cfg["search"]
    space = run_space(run_dir)
    check_constraints(space, se["budgets"], se["min_madds"], se["max_params"])  # fail before loading weights
    out = Path(out_dir) if out_dir else run_dir / "search"
    latency = (None, {})
    if se["latency_budgets"]:
        from stnas.pipeline.latency import search_predictor
        latency = search_predictor(space, cfg, this_device=False)
    ctx = dist.setup(cfg["device"])
    try:
        result, scorer = run_search(cfg, runs, out, ctx, edge=edge, seed=seed, latency=latency,
                                    info={"run_dir": str(run_dir)})
    finally:
        dist.teardown()
    return Searched(result if ctx.is_main else None, scorer.mode, scorer.metric, cfg, out, latency[0] is not None)
