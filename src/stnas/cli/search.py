"""``stnas search``: constrained evolutionary or random search on a trained run."""

from __future__ import annotations

from stnas.cli.common import choice_help, count, count_list, out_arg, path_arg, positive_int, seed_arg, show_plan, table
from stnas.cli.latency import add_latency_args, latency_flags
from stnas.proxy.modes import PROXY_MODES
from stnas.search.algorithms import SEARCH_ALGORITHMS, SELECTIONS


def register(sub) -> None:
    p = sub.add_parser("search", help="search architectures under MAdds/params budgets with the proxy",
                       description="Evolutionary (SPOS-style: population, top-k parents, crossover, mutation) or "
                                   "random search on a trained run, scoring candidates with the share-parameter "
                                   "proxy. Candidates outside the constraints are never scored; several budgets "
                                   "share one search. Scores are cached in the run, so an interrupted search "
                                   "rerun with the same settings replays without rescoring.")
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run directory made by `stnas supernet train`")
    p.add_argument("--few-shot", type=path_arg, metavar="RUN_DIR_2",
                   help="few-shot search: RUN_DIR and RUN_DIR_2 are the two children of one split "
                        "(supernet.split=E:off and E:on), each architecture scored by its side's")
    p.add_argument("--ensemble", nargs="+", type=path_arg, metavar="RUN_DIR_2",
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
    p.add_argument("--dry-run", action="store_true", help="print the plan (evaluations, estimated time here) and exit")
    p.add_argument("--out", type=out_arg, help="output folder (default RUN_DIR/search)")
    p.add_argument("--seed", type=seed_arg, help="seed of the search alone (default: the run's seed; "
                   "the data split keeps the run's seed)")
    p.add_argument("--config", type=path_arg, metavar="FILE.yaml", help="a YAML file with search and proxy settings")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (config: device)")
    p.add_argument("--data-root", type=path_arg, help="where to look for the dataset first (config: data.root)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. search.parents=5 proxy.recal_batches=8")
    p.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    from stnas.core.units import budget_label, fmt_count
    from stnas.pipeline.config import user_layers
    from stnas.pipeline.search import search_trained

    flags = {"search.budgets": args.budget, "search.algorithm": args.algorithm, "proxy.mode": args.mode,
             "search.generations": args.generations, "search.population": args.population,
             "search.max_params": args.max_params, "device": args.device,
             "data.root": args.data_root, **latency_flags(args)}
    layers = user_layers(args.config, flags, args.overrides)
    if _plan(args, layers):
        return 0
    done = search_trained(args.run_dir, layers, few_shot=args.few_shot, ensemble=args.ensemble or (),
                          out_dir=args.out, seed=args.seed)
    res, se, out = done.result, done.cfg["search"], done.out_dir
    if res is None:  # a torchrun rank other than 0
        return 0
    rows = []
    for b, recs in res.best.items():
        if recs:
            r = recs[0]
            rows.append([budget_label(b), str(r.arch), fmt_count(r.madds), fmt_count(r.params),
                         f"{r.score:.4f} ± {r.std:.4f}"] + ([f"{r.latency_ms:.3f}"] if done.latency else []))
        else:
            rows.append([budget_label(b), "(none found)", "", "", ""] + ([""] if done.latency else []))
    print(f"{se['algorithm']} search, proxy mode {done.mode}, metric {done.metric}: {len(res.history)} "
          f"architectures scored in {res.generations} generations")
    picked = SELECTIONS.get(se["select"]).describe(se["tie_alpha"])
    print(table(rows, ["budget", f"{picked} architecture", "MAdds", "params", "score ± std"]
                + (["predicted ms"] if done.latency else [])))
    print(f"history {res.files['history']}\npareto  {res.files['pareto']}\nbest    {res.files['best']} "
          f"(architecture files in {out / 'best'})\nsummary {res.files['summary']}")
    return 0


def _plan(args, layers) -> bool:
    """Prints the search's plan (``stnas.pipeline.plan``); True for ``--dry-run``."""
    from stnas.core.rundir import RunDir
    from stnas.pipeline.search import search_config
    from stnas.space.catalog import run_space
    from stnas.train.pool import SamplePool

    cfg = search_config(args.run_dir, layers)
    sizes = {"pool_samples": len(SamplePool(RunDir(args.run_dir).pool)), "members": 1 + len(args.ensemble or ())}
    return show_plan(cfg, ("search",), dry_run=args.dry_run, space=run_space(args.run_dir), sizes=sizes)
