"""``stnas search``: constrained evolutionary or random search on a trained run."""

from __future__ import annotations

from pathlib import Path

from stnas.cli.common import choice_help, count, count_list, positive_int, seed_arg, table
from stnas.cli.latency import add_latency_args, latency_flags
from stnas.core.errors import ConfigError
from stnas.proxy.modes import PROXY_MODES
from stnas.search.algorithms import SEARCH_ALGORITHMS, SELECTIONS
from stnas.space.catalog import run_space

# what a search may change in a trained run's config (the rest, the seed included, fixes the
# trained supernet and the data split)
_ADJUSTABLE = ("search", "proxy", "latency", "device", "data.root", "data.workers", "data.val_limit")


def register(sub) -> None:
    p = sub.add_parser("search", help="search architectures under MAdds/params budgets with the proxy",
                       description="Evolutionary (SPOS-style: population, top-k parents, crossover, mutation) or "
                                   "random search on a trained run, scoring candidates with the share-parameter "
                                   "proxy. Candidates outside the constraints are never scored; several budgets "
                                   "share one search. Scores are cached in the run, so an interrupted search "
                                   "rerun with the same settings replays without rescoring.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `stnas supernet train`")
    p.add_argument("--few-shot", metavar="RUN_DIR_2",
                   help="few-shot search: RUN_DIR and RUN_DIR_2 are the two children of one split "
                        "(supernet.split=E:off and E:on), each architecture scored by its side's")
    p.add_argument("--ensemble", nargs="+", metavar="RUN_DIR_2",
                   help="ensemble search: RUN_DIR and these runs (supernets of one space trained on the same "
                        "data, e.g. --seed 1 data.split_seed=0) score every architecture by the mean of their "
                        "scores")
    p.add_argument("--budget", type=count_list, metavar="B[,B...]",
                   help="MAdds budget(s), e.g. 3M,6M (config: search.budgets)")
    p.add_argument("--algorithm", choices=SEARCH_ALGORITHMS.names(),
                   help=choice_help(SEARCH_ALGORITHMS, "search.algorithm"))
    p.add_argument("--mode", choices=PROXY_MODES.names(), help=choice_help(PROXY_MODES, "proxy.mode"))
    p.add_argument("--generations", type=positive_int(), help="config: search.generations")
    p.add_argument("--population", type=positive_int(), help="config: search.population")
    p.add_argument("--max-params", type=count, help="parameter limit, e.g. 500k (config: search.max_params)")
    add_latency_args(p)
    p.add_argument("--out", help="output folder (default RUN_DIR/search)")
    p.add_argument("--seed", type=seed_arg, help="seed of the search alone (default: the run's seed; "
                   "the data split keeps the run's seed)")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file with search and proxy settings")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (config: device)")
    p.add_argument("--data-root", help="where to look for the dataset first (config: data.root)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. search.parents=5 proxy.recal_batches=8")
    p.set_defaults(func=cmd_search)


def search_config(args, run_dir=None) -> dict:
    """The config of ``run_dir`` (default RUN_DIR) with the search's flags, --config file and
    overrides applied."""
    from stnas.pipeline.config import apply_layers, load_run_config, user_layers

    flags = {"search.budgets": args.budget, "search.algorithm": args.algorithm, "proxy.mode": args.mode,
             "search.generations": args.generations, "search.population": args.population,
             "search.max_params": args.max_params, "device": args.device,
             "data.root": args.data_root, **latency_flags(args)}
    return apply_layers(load_run_config(run_dir or args.run_dir), user_layers(args.config, flags, args.overrides),
                        allowed=_ADJUSTABLE, context="after supernet training")


def cmd_search(args) -> int:
    from contextlib import ExitStack

    from stnas.core import dist
    from stnas.core.rundir import RunDir
    from stnas.core.units import budget_label, fmt_count
    from stnas.search.evolution import check_constraints, search

    cfg = search_config(args)
    run = Path(args.run_dir)
    sides = {None: run}  # a plain search: one run; a few-shot one: {False: off child, True: on child}
    if args.few_shot is not None and args.ensemble:
        raise ConfigError("--few-shot and --ensemble do not combine: choose one")
    if args.ensemble:  # every member's config read (and checked) before any weights load
        sides = {i: Path(r) for i, r in enumerate([run, *args.ensemble])}
        if len(set(map(str, sides.values()))) < len(sides):
            raise ConfigError("--ensemble: a run is named twice")
        cfgs = {i: cfg if i == 0 else search_config(args, r) for i, r in sides.items()}
    if args.few_shot is not None:
        from stnas.proxy.few_shot import check_children

        edge, sides = check_children([run, args.few_shot])
        cfgs = {on: cfg if r == run else search_config(args, r) for on, r in sides.items()}
    se = cfg["search"]
    space = run_space(run)
    check_constraints(space, se["budgets"], se["min_madds"], se["max_params"])  # fail before loading weights
    out = Path(args.out) if args.out else run / "search"
    predictor, lat_info = None, {}
    if se["latency_budgets"]:
        from stnas.pipeline.latency import search_predictor
        predictor, lat_info = search_predictor(space, cfg, this_device=False)
    from stnas.proxy.scorer import Proxy

    ctx = dist.setup(cfg["device"])
    try:
        with ExitStack() as stack:
            for r in sides.values():  # the search writes the runs' proxy caches
                stack.enter_context(RunDir(r).lock(ctx.is_main))
            if args.ensemble:
                from stnas.proxy.ensemble import EnsembleScorer

                proxy = EnsembleScorer([Proxy(sides[i], cfg=c, mode=c["proxy"]["mode"], ctx=ctx)
                                        for i, c in cfgs.items()])
            elif args.few_shot is None:
                proxy = Proxy(run, cfg=cfg, mode=cfg["proxy"]["mode"], ctx=ctx)
            else:
                from stnas.proxy.few_shot import FewShotScorer

                proxy = FewShotScorer({on: Proxy(sides[on], cfg=c, mode=c["proxy"]["mode"], ctx=ctx)
                                       for on, c in cfgs.items()}, edge)
            seed = cfg["seed"] if args.seed is None else args.seed
            res = search(proxy.space, proxy.score, se, out if ctx.is_main else None, seed=seed,
                         progress=ctx.is_main and cfg["supernet"].get("progress", True),
                         info={"run_dir": str(run), "proxy_mode": proxy.mode, "proxy_metric": proxy.metric,
                               "proxy_settings": proxy.settings, **lat_info},
                         screen=lambda archs: proxy.score(archs, samples=1), latency=predictor)
            if predictor is not None and ctx.is_main:
                from stnas.pipeline.latency import keep_table
                keep_table(predictor, out)
    finally:
        dist.teardown()
    if not ctx.is_main:
        return 0
    rows = []
    for b, recs in res.best.items():
        if recs:
            r = recs[0]
            rows.append([budget_label(b), str(r.arch), fmt_count(r.madds), fmt_count(r.params),
                         f"{r.score:.4f} ± {r.std:.4f}"] + ([f"{r.latency_ms:.3f}"] if predictor else []))
        else:
            rows.append([budget_label(b), "(none found)", "", "", ""] + ([""] if predictor else []))
    print(f"{se['algorithm']} search, proxy mode {proxy.mode}, metric {proxy.metric}: {len(res.history)} "
          f"architectures scored in {res.generations} generations")
    picked = SELECTIONS.get(se["select"]).describe(se["tie_alpha"])
    print(table(rows, ["budget", f"{picked} architecture", "MAdds", "params", "score ± std"]
                + (["predicted ms"] if predictor else [])))
    print(f"history {res.files['history']}\npareto  {res.files['pareto']}\nbest    {res.files['best']} "
          f"(architecture files in {out / 'best'})\nsummary {res.files['summary']}")
    return 0
