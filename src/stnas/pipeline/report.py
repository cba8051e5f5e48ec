"""Pipeline step 7: the report of a run — report.json, report.md and PNG plots.

Reads only what the earlier steps wrote into the run directory, through their checking
readers: the supernet summary and training curves, the search history and Pareto front, the
chosen architectures, the model cards of their retrained models and the baselines table
(stnas.pipeline.baselines). report.json is checksummed (:func:`read_report`); report.md and
the plots are for people.
"""

from __future__ import annotations

import os
from pathlib import Path

from stnas.core import verified
from stnas.core.fileio import write_text
from stnas.core.rundir import RunDir
from stnas.core.units import budget_label, fmt_count, fmt_duration
from stnas.pipeline.plots import draw_arch, plot_baselines, plot_curves, plot_pareto
from stnas.proxy.modes import PROXY_METRICS
from stnas.search.algorithms import DEFAULT_SELECTION, SELECTIONS
from stnas.search.history import read_search
from stnas.space.catalog import load_arch

LOW_USE = 0.5  # a pick below this share of its budget is flagged


def budget_notes(chosen: list[dict]) -> list[str]:
    """Flags: a budget whose pick equals a smaller budget's, or uses little of its budget."""
    notes, seen = [], {}
    for c in sorted(chosen, key=lambda c: (c["budget"] or 0, c.get("target") or "")):
        label = f"≤ {c.get('target') or fmt_count(c['budget'])}"
        if c["arch"] in seen:
            notes.append(f"{label}: the same architecture as {seen[c['arch']]} (one retrained model serves both)")
        seen.setdefault(c["arch"], label)
        if c["budget"] and c["madds"] < LOW_USE * c["budget"]:
            notes.append(f"{label}: the pick uses only {c['madds'] / c['budget']:.0%} of its budget "
                         f"(search.budget_floor=0.85 searches within [0.85 B, B])")
    return notes


def _recipe(card: dict) -> str:
    """Which data and recipe a test accuracy comes from."""
    if "top1" not in card:
        return ""
    data = Path(str(card.get("dataset", "?"))).name
    return (f"{data}: {card.get('train_images', '?')} train images × {card.get('epochs', '?')} epochs, "
            f"{card.get('test_images', '?')} test images")


def write_report(run_dir: str | Path, chosen: list[dict], cfg: dict, wall: dict | None = None,
                 plan: dict | None = None) -> dict:
    """Writes report.json, report.md and the plots.

    Args:
        chosen: one entry per budget: {budget, arch (string), madds, params, score, std,
            model_card (dict or None), retrain_dir}.
        wall: seconds per stage.
        plan: the run's plan (stnas.pipeline.plan): its estimates go beside ``wall``.
    """
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    plots = run.plots
    history = read_search(run.search, "history") or []
    pareto = read_search(run.search, "pareto") or []
    files = {}
    if history:
        files["pareto"] = str(plot_pareto(history, pareto, chosen, plots / "pareto.png",
                                          PROXY_METRICS.get(cfg["proxy"]["metric"]).text))
        if "latency_ms" in history[0] and all(c.get("latency_ms") is not None for c in chosen):
            files["pareto_latency"] = str(plot_pareto(
                history, read_search(run.search, "pareto_latency") or [], chosen,
                plots / "pareto_latency.png", PROXY_METRICS.get(cfg["proxy"]["metric"]).text, cost="latency_ms"))
    metrics = verified.read_jsonl(run.metrics, "training log")[0]
    if metrics:
        files["supernet_curves"] = str(plot_curves(metrics, plots / "supernet_curves.png", "supernet training"))
    for c in chosen:
        label = c.get("target") or budget_label(c["budget"])
        files[f"arch_{label}"] = str(draw_arch(load_arch(c["arch"], cfg["preset"]), plots / f"arch_{label}.png"))
    baselines = _baselines_table(run)
    if baselines:
        files["baselines"] = str(plot_baselines(baselines, plots / "baselines.png"))
    report = {
        "preset": cfg["preset"], "dataset": cfg["data"]["dataset"], "proxy_mode": cfg["proxy"]["mode"],
        "proxy_metric": cfg["proxy"]["metric"],
        "optimizer": cfg["supernet"]["optimizer"],
        "supernet": (verified.read_json(run.supernet_summary, "supernet summary")
                     if run.supernet_summary.exists() else {}),
        "search": read_search(run.search, "summary") or {}, "chosen": chosen, "wall_s": wall or {},
        "planned_s": planned_seconds(plan),
        "plots": files, "notes": budget_notes(chosen), "proxy_unit": PROXY_METRICS.get(cfg["proxy"]["metric"]).unit,
        **({"baselines": baselines} if baselines else {}),
    }
    verified.write_json(run.report_json, report)
    write_text(run.report_md, _markdown(report, run_dir))
    return report


def read_report(run_dir: str | Path) -> dict:
    """A run's report.json, checksum verified (CheckpointError when damaged)."""
    return verified.read_json(RunDir(run_dir).report_json, "run report")


def latency_lines(chosen: list[dict]) -> list[str]:
    """The report's latency table (only when the chosen models were measured)."""
    lat = [(c, (c.get("model_card") or {}).get("latency") or c.get("latency")) for c in chosen]
    lat = [(c, x) for c, x in lat if x]
    if not lat:
        return []
    x0 = lat[0][1]
    lines = [f"Latency on {x0['device']}: predicted from the lookup "
             f"table, measured end to end ({x0['calls']} timed calls; median, interquartile range, min-max).", "",
             "| budget | architecture | predicted ms | measured ms | IQR ms | min-max ms |",
             "|---|---|---|---|---|---|"]
    for c, x in lat:
        lines.append(f"| ≤ {c.get('target') or fmt_count(c['budget'])} | `{c['arch']}` | {x['predicted_ms']:.3f} "
                     f"| {x['measured_ms']:.3f} | {x['measured_iqr_ms']:.3f} "
                     f"| {x['measured_min_ms']:.3f}-{x['measured_max_ms']:.3f} |")
    return lines + [""] + kept_lines(chosen)


def kept_lines(chosen: list[dict]) -> list[str]:
    """The report's table of latency budgets kept on measurement (stnas.pipeline.latency.measured_picks)."""
    kept = [c["latency_kept"] for c in chosen if c.get("latency_kept")]
    if not kept:
        return []
    lines = [f"Latency budgets kept on measurement: the search kept each prediction ≤ budget × (1 − margin) "
             f"(margin: {kept[0]['margin_method']}); the candidates were then measured, best first, until one "
             f"was within ({kept[0]['noise_rule']}). Score given up: the search's best within the budget "
             f"without the margin, minus the pick's.", "",
             "| budget | margin | searched ≤ ms | predicted ms | measured ms | within | measured | pick rank "
             "| score given up |", "|---|---|---|---|---|---|---|---|---|"]
    for k in kept:
        given = "" if k["score_given_up"] is None else f"{k['score_given_up']:.4g}"
        lines.append(f"| ≤ {k['target']} | {k['margin']:.1%} | {k['searched_limit_ms']:.3f} | {k['predicted_ms']:.3f} "
                     f"| {k['measured_ms']:.3f} | {'yes' if k['within'] else 'no'} | {k['measured']} "
                     f"| {k['pick_rank']} | {given} |")
    return lines + [""]


def planned_seconds(plan: dict | None) -> dict[str, float]:
    """{stage: planned seconds} of a run's plan (stnas.pipeline.plan; empty without one)."""
    return {s["name"]: s["seconds"] for s in (plan or {}).get("stages", [])}


def time_lines(planned: dict, wall: dict) -> list[str]:
    """Time per stage: planned (the run's plan, made before any work) and actual. The
    calibration's actual is its planned: it was measured, not estimated. A resumed run's
    actual times are those of its last session."""
    if not planned:
        return ["Time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()), ""] if wall else []
    actual = {"calibration": planned.get("calibration", 0.0), **wall}
    rows = [(k, fmt_duration(v), fmt_duration(actual[k]) if k in actual else "") for k, v in planned.items()]
    rows.append(("total", fmt_duration(sum(planned.values())), fmt_duration(sum(actual.values()))))
    return (["Time per stage, planned before any work and actual:", "", "| stage | planned | actual |", "|---|---|---|"]
            + [f"| {a} | {b} | {c} |" for a, b, c in rows] + [""])


def _choice(summary: dict) -> str:
    c = summary.get("config", {})  # a search from before `select` existed chose the best
    rule = SELECTIONS.get(c.get("select", DEFAULT_SELECTION))
    if not rule.paired:
        return ""
    return (f"; each budget's choice is the network with the most MAdds among those a paired t-test across "
            f"the parameter samples cannot tell from the best score (alpha {c['tie_alpha']:g})")


def _markdown(r: dict, run_dir: Path) -> str:
    s = r["supernet"]
    lines = [f"# stnas run: {r['preset']} on {r['dataset']}", "",
             f"Supernet: {s.get('steps', '?')} steps, {s.get('optimizer', r['optimizer'])} sampling phase, "
             f"{s.get('pool_samples', '?')} parameter samples, {s.get('wall_s', 0):.0f} s "
             f"({s.get('images_per_s', 0):.0f} img/s on {s.get('device', '?')}). "
             f"Proxy: `{r['proxy_mode']}` ({PROXY_METRICS.get(r['proxy_metric']).text}; ± is the std across "
             f"parameter samples). "
             f"Search: {r['search'].get('evaluations', '?')} architectures scored{_choice(r['search'])}. "
             f"The proxy's unit: {PROXY_METRICS.get(r['proxy_metric']).unit}.", "",
             f"| budget{'' if any(c.get('target') for c in r['chosen']) else ' (MAdds)'} | architecture | MAdds "
             "| params | proxy score ± std | retrained test top-1 | top-5 | retrained on |",
             "|---|---|---|---|---|---|---|---|"]
    for c in r["chosen"]:
        card = c.get("model_card") or {}
        top1 = f"{card['top1']:.4f}" if "top1" in card else "not retrained"
        top5 = f"{card['top5']:.4f}" if "top5" in card else ""
        lines.append(f"| ≤ {c.get('target') or fmt_count(c['budget'])} | `{c['arch']}` | {fmt_count(c['madds'])} "
                     f"| {fmt_count(c['params'])} | {c['score']:.4f} ± {c['std']:.4f} | {top1} | {top5} "
                     f"| {_recipe(card)} |")
    lines += [""] + latency_lines(r["chosen"])
    lines += [f"- {n}" for n in r["notes"]] + ([""] if r["notes"] else [])
    lines += baseline_lines(r.get("baselines"))
    lines += ["The models to deploy are the retrained ones (`retrain/budget_*/model/`: ONNX, `.pt2`, and a model "
              "card with the preprocessing); `stnas export` of supernet weights gives an untrained starting point.", ""]
    lines += time_lines(r["planned_s"], r["wall_s"])
    for name, path in r["plots"].items():
        lines += [f"![{name}]({os.path.relpath(path, run_dir)})", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ baselines
def _baselines_table(run: RunDir) -> dict | None:
    path = run.baselines / "baselines.json"  # stnas.pipeline.baselines.TABLE
    return verified.read_json(path, "baselines table") if path.is_file() else None


def _pm(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def baseline_lines(table: dict | None) -> list[str]:
    """The baselines section: one table per budget, stnas's pick first."""
    if not table:
        return []
    seeds, lat, k = table["seeds"], table["latency_settings"], table["recal_batches"]
    recal = f"its BN statistics recalibrated on {k} batches of unaugmented training images" if k else \
        "no BN recalibration (baselines.recal_batches 0)"
    picked = any(r["kind"] == "stnas" for b in table["budgets"] for r in b["rows"])
    pick = ("; stnas's pick too, so its top-1 here can differ from the retraining's above. " if picked else ". ")
    lines = ["## Baselines: standard networks trained and evaluated as the picks are", "",
             f"Each network was trained from scratch with the retrain recipe ({table['train_images'] or '?'} train "
             f"images × {table['recipe']['epochs']} epochs, seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}), then tested with {recal}{pick}"
             f"± is the sd over seeds. Latency: measured end to end here "
             f"({lat['runtime']} on {lat['device']}, batch {lat['batch']}, {lat['threads']} thread(s); median and "
             f"interquartile range). Δ: the network minus stnas's pick (top-1: higher is better; loss: lower). "
             f"`defined`: torchvision's network as defined, its first convolution built for the data's channels; "
             f"`adapted`: a stem that keeps a small input's resolution and, where the family has one, the largest "
             f"width multiplier that fits (docs/usage.md, \"Baselines\").", ""]
    for b in table["budgets"]:
        lines += [f"### ≤ {b['budget']['label']}", "",
                  "| network | form | MAdds | params | latency ms (IQR) | test top-1 | test loss | Δ top-1 | Δ loss |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in b["rows"]:
            name = f"stnas pick `{r['arch']}`" if r["kind"] == "stnas" else r["name"]
            ms = r["measured_latency"]
            d = [f"{r[key]:+.4f}" if key in r else "" for key in ("d_top1", "d_test_loss")]
            lines.append(f"| {name} | {r['form']} | {fmt_count(r['madds'])} | {fmt_count(r['params'])} "
                         f"| {ms['median_ms']:.3f} ({ms['iqr_ms']:.3f}) | {_pm(r['top1'], r['top1_sd'])} "
                         f"| {_pm(r['test_loss'], r['test_loss_sd'])} | {d[0]} | {d[1]} |")
        if not any(r["kind"] == "baseline" for r in b["rows"]):
            lines += ["", "No configured baseline fits this budget."]
        if b["unfit"]:
            least = sorted(b["unfit"], key=lambda u: u["madds"])[:3]
            lines += ["", f"{len(b['unfit'])} configured networks do not fit (report.json lists why); the smallest: "
                      + "; ".join(u["why"] for u in least) + "."]
        lines.append("")
    return lines


def write_baselines_report(run_dir: str | Path, table: dict) -> dict:
    """report.json, report.md and plots/baselines.png of a ``stnas baselines`` run."""
    run_dir = Path(run_dir)
    files = {"baselines": str(plot_baselines(table, run_dir / "plots" / "baselines.png"))}
    report = {"dataset": table["dataset"], "baselines": table, "plots": files}
    verified.write_json(RunDir(run_dir).report_json, report)
    lines = [f"# stnas baselines on {Path(str(table['dataset'])).name}", ""] + baseline_lines(table)
    lines += [f"![baselines]({os.path.relpath(files['baselines'], run_dir)})", ""]
    write_text(run_dir / "report.md", "\n".join(lines))
    return report
