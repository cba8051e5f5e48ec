"""``stnas rank`` and ``stnas stability``: how faithful and how stable the proxy's ranking is."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from stnas.cli.common import out_arg, path_arg, positive_int, seed_arg, table
from stnas.pipeline.config import ON_EXISTING_RUN
from stnas.proxy.modes import PROXY_MODES
from stnas.space.catalog import run_space


def register(sub) -> None:
    p = sub.add_parser("rank", help="proxy fidelity: Kendall tau / Spearman rho / top-k vs stand-alone accuracy",
                       description="Score architectures with the proxy of a trained run and compare the ranking "
                                   "with stand-alone (trained from scratch) accuracies: Kendall tau, Spearman rho "
                                   "and top-k overlap with 95% bootstrap intervals. Writes RUN_DIR/rank.json "
                                   "(or --out).")
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run trained by stnas supernet train")
    p.add_argument("--truth", required=True, type=path_arg, metavar="FILE",
                   help='stand-alone accuracies: {"format": "stnas-truth", "version": 1, '
                        '"results": [{"arch": STRING, "top1": FLOAT}, ...]}')
    p.add_argument("--archs", type=path_arg, metavar="FILE",
                   help="architectures to rank (JSON list, JSONL or one string per line; default: every "
                        "architecture in the truth file)")
    p.add_argument("--mode", default="all", choices=[*PROXY_MODES.names(), "all"],
                   help=f"proxy mode(s) to evaluate, {PROXY_MODES.help()}; or all (the default)")
    p.add_argument("--top-k", type=positive_int(10**5), default=5, help="size of the top set compared (default 5)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    _common(p)
    p.set_defaults(func=cmd_rank)

    s = sub.add_parser("stability", help="proxy stability: Kendall tau between consecutive checkpoints",
                       description="Rank a fixed architecture set at every epoch checkpoint (epochs/) and "
                                   "every pool sample of a run, and report Kendall tau between consecutive "
                                   "rankings. Writes RUN_DIR/stability.json (or --out).")
    s.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run trained by stnas supernet train")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--archs", type=path_arg, metavar="FILE",
                   help="the architecture set (JSON list, JSONL or one per line)")
    g.add_argument("-n", type=positive_int(10**5), default=20,
                   help="else: this many distinct random architectures (default 20)")
    _common(s)
    s.set_defaults(func=cmd_stability)


def _common(p) -> None:
    p.add_argument("--seed", type=seed_arg, default=0,
                   help="seeds the bootstrap / the random architectures (default 0)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the result JSON instead of a table")
    p.add_argument("--out", type=out_arg, metavar="FILE.json",
                   help="where the result goes (default RUN_DIR/<command>.json); a file holding a result of other "
                        "inputs is never replaced")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="proxy settings for this scoring, e.g. proxy.recal_batches=8 data.val_limit=500 "
                        f"(only {', '.join(ON_EXISTING_RUN['rank']['change'])} and their sub-keys)")


def _config(args) -> dict:
    from stnas.pipeline.config import apply_layers, load_run_config, user_layers

    return apply_layers(load_run_config(args.run_dir), user_layers(None, {"device": args.device}, args.overrides),
                        allowed=ON_EXISTING_RUN["rank"]["change"], context="when scoring a trained run")


def _finite(obj):
    """NaN/inf -> None, so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _ci(m: dict) -> str:
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"  # noqa: E731
    return f"{fmt(m['value'])} [{fmt(m['lo'])}, {fmt(m['hi'])}]"


# the arguments that decide a result (with the scoring settings): a file of other inputs is kept
INPUTS = {"rank": ("truth", "archs", "mode", "top_k", "n_boot", "seed"), "stability": ("archs", "n", "seed")}


def _inputs(args, cfg: dict, kind: str) -> dict:
    inputs = {k: getattr(args, k) for k in INPUTS[kind]}
    for k in ("truth", "archs"):
        if inputs.get(k):
            inputs[k] = str(Path(inputs[k]).resolve())
    return json.loads(json.dumps(inputs | {"proxy": cfg["proxy"], "val_limit": cfg["data"]["val_limit"]}))


def _run(args, work, kind: str) -> int:
    """Sets up the process group, runs ``work(cfg, ctx)`` and writes/prints its result, after
    checking (before any scoring) that it replaces no result of other inputs."""
    from stnas.core import dist
    from stnas.core.errors import CheckpointError
    from stnas.core.rundir import check_same_inputs
    from stnas.core.verified import read_json, write_json

    cfg = _config(args)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"{kind}.json"
    inputs = _inputs(args, cfg, kind)
    if out.exists():
        try:
            old = read_json(out, f"{kind} result").get("inputs")
        except CheckpointError:
            old = None
        check_same_inputs(out, f"a {kind} result", old if isinstance(old, dict) else None, inputs,
                          "write this one elsewhere (--out FILE.json), or remove that file to replace it")
    ctx = dist.setup(cfg["device"])
    try:
        result, text = work(cfg, ctx)
    finally:
        dist.teardown()
    if ctx.is_main:
        result = _finite(result | {"inputs": inputs})
        write_json(out, result)
        print(json.dumps(result, indent=2) if args.json else text)
    return 0


def cmd_rank(args) -> int:
    from stnas.analysis.ranking import load_arch_list, load_truth, rank_metrics
    from stnas.core.errors import ConfigError
    from stnas.pipeline.inputs import check_scoring
    from stnas.pipeline.search import proxy_for_run

    if args.top_k < 1 or args.n_boot < 0:
        raise ConfigError("--top-k must be >= 1 and --n-boot >= 0")

    def work(cfg, ctx):
        space = run_space(args.run_dir)  # check the input files before any scoring
        truth = load_truth(args.truth, space)
        archs = load_arch_list(args.archs, space) if args.archs else list(truth)
        missing = [a for a in archs if a not in truth]
        if missing:
            raise ConfigError(f"{len(missing)} architecture(s) of {args.archs} are missing from truth file "
                              f"{args.truth}, e.g. {missing[0]}")
        true = [truth[a] for a in archs]
        modes = list(PROXY_MODES.names()) if args.mode == "all" else [args.mode]
        check_scoring(args.run_dir, cfg, modes)  # before any scoring or bar
        proxy = proxy_for_run(args.run_dir, cfg, modes[0], ctx, progress=sys.stderr.isatty())
        result = {"run_dir": str(args.run_dir), "truth": str(args.truth), "n": len(archs), "proxy": cfg["proxy"],
                  "val_limit": cfg["data"]["val_limit"], "modes": {}}
        rows = []
        for mode in modes:
            scores = proxy.score(archs, mode)
            m = rank_metrics([s.score for s in scores], true, args.top_k, args.n_boot, args.seed)
            mean_std = sum(s.std for s in scores) / len(scores)
            result["modes"][mode] = dict(m, mean_std=mean_std, scores=[
                {"arch": s.arch, "score": s.score, "std": s.std, "loss": s.loss, "truth": t}
                for s, t in zip(scores, true)])
            rows.append([mode, m["n"], _ci(m["kendall_tau"]), _ci(m["spearman_rho"]),
                         _ci(m["top_k_overlap"]), f"{mean_std:.4f}"])
        text = table(rows, ["mode", "n", "Kendall tau [95% CI]", "Spearman rho [95% CI]",
                            f"top-{min(args.top_k, len(archs))} overlap [95% CI]", "mean std"])
        return result, text

    return _run(args, work, "rank")


def cmd_stability(args) -> int:
    import numpy as np

    from stnas.analysis.ranking import load_arch_list, stability
    from stnas.core.errors import ConfigError
    from stnas.pipeline.inputs import check_stability
    from stnas.pipeline.search import proxy_for_run

    def work(cfg, ctx):
        check_stability(args.run_dir, cfg)  # before any scoring or bar
        proxy = proxy_for_run(args.run_dir, cfg, "single", ctx, progress=sys.stderr.isatty())
        if args.archs:
            archs = load_arch_list(args.archs, proxy.space)
        else:
            if args.n < 3:
                raise ConfigError(f"-n must be at least 3, got {args.n}")
            rng, seen = np.random.default_rng(args.seed), {}
            for _ in range(100 * args.n):
                if len(seen) == args.n:
                    break
                a = proxy.space.sample(rng)
                seen.setdefault(a, a)
            archs = list(seen)
        res = stability(args.run_dir, archs, proxy)
        lines = []
        for part in ("epochs", "pool_samples", "pool_running_mean"):
            if part in res:
                r = res[part]
                lines.append(f"{r['kind']}: mean tau {r['summary']['mean_tau']:+.3f}, "
                             f"min {r['summary']['min_tau']:+.3f}, last {r['summary']['last_tau']:+.3f}")
                lines.append(table([[p["from"], p["to"], f"{p['tau']:+.3f}"] for p in r["pairs"]],
                                   ["from", "to", "Kendall tau"]))
                lines.append("")
        return res, f"{len(archs)} architectures\n\n" + "\n".join(lines).rstrip()

    return _run(args, work, "stability")
