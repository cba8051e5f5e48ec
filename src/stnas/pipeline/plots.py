"""Pictures: the architecture DAG (and, for reports, curves, Pareto fronts and the baselines).

matplotlib with the Agg backend; every figure is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from stnas.core.errors import ConfigError  # noqa: E402
from stnas.core.fileio import atomic_write  # noqa: E402
from stnas.core.units import fmt_count  # noqa: E402
from stnas.space.arch import Arch  # noqa: E402
from stnas.space.cost import kind_of_record  # noqa: E402

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Writes a figure atomically; the format follows the file suffix."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write {path}: use one of {', '.join(_FORMATS)}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return path


def _short(op: str) -> str:
    return op.replace("mb_", "").replace("_", "")


def draw_arch(arch: Arch, path: str | Path) -> Path:
    """Draws the DAG: feature maps as circles coloured by stage, stem edges as solid
    arrows labelled with their op, branch edges as dashed arcs (depth 2 above the
    chain, longer ones below)."""
    s = arch.space
    n = s.num_edges
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * (n + 1)), 3.6))
    cmap = plt.get_cmap("tab10")
    for j in range(n + 1):
        st = s.node_stages[j]
        ax.add_patch(plt.Circle((j, 0), 0.22, color=cmap((st + 1) % 10), zorder=3))
        ax.text(j, 0, f"x{j}", ha="center", va="center", fontsize=7, color="white", zorder=4)
        ax.text(j, -0.36, f"{s.node_channels[j]}", ha="center", va="top", fontsize=6, color="0.3")
    for e, o in zip(s.stem_edges, arch.stem):
        ax.add_patch(FancyArrowPatch((e.src + 0.22, 0), (e.dst - 0.22, 0), arrowstyle="-|>",
                                     mutation_scale=8, color="black", lw=1.2))
        ax.text((e.src + e.dst) / 2, 0.08, _short(s.ops[o].name) + ("/2" if e.stride == 2 else ""),
                ha="center", va="bottom", fontsize=6)
    for b, o in zip(s.branch_edges, arch.branches):
        if o < 0:
            continue
        up = b.dst - b.src == min(s.branch_depths)
        rad = -0.5 if up else 0.45
        ax.add_patch(FancyArrowPatch((b.src, 0.22 if up else -0.22), (b.dst, 0.22 if up else -0.22),
                                     connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=7,
                                     color="tab:red" if up else "tab:blue", lw=0.9, linestyle="--"))
        y = (0.22 + 0.25 * (b.dst - b.src)) if up else -(0.5 + 0.22 * (b.dst - b.src))
        ax.text((b.src + b.dst) / 2, y, _short(s.branch_ops[o].name), ha="center", fontsize=5,
                color="tab:red" if up else "tab:blue")
    ax.set_xlim(-0.6, n + 0.6)
    ax.set_ylim(-1.6, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{arch}\nMAdds {fmt_count(arch.madds)}  params {fmt_count(arch.params)}  "
                 f"branches {arch.num_branches}/{len(s.branch_edges)}", fontsize=8)
    return save_figure(fig, path, dpi=150)


def plot_pareto(history: list[dict], pareto: list[dict], chosen: list[dict], path: str | Path,
                metric: str = "search-val top-1", cost: str = "madds") -> Path:
    """Cost (``madds``, or predicted ``latency_ms``) vs proxy score (``metric`` names it) of
    every scored architecture, the Pareto front, the budgets and the chosen architectures."""
    kind = kind_of_record(cost)
    (axis, scale), budget_key = kind.axis, kind.json_key
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter([h[cost] / scale for h in history], [h["score"] for h in history], s=10, alpha=0.45,
               color="tab:gray", label=f"scored ({len(history)})")
    if pareto:
        front = sorted(pareto, key=lambda h: h[cost])
        # markers too: a front of one architecture is a zero-length line otherwise
        ax.step([h[cost] / scale for h in front], [h["score"] for h in front], where="post", color="tab:blue",
                lw=1.2, marker="o", ms=3, label=f"Pareto front ({len(front)})", zorder=2)
    markers = "*DsP^v"
    for k, c in enumerate(chosen):
        color = plt.get_cmap("tab10")((k + 1) % 10)
        if c.get(budget_key) is not None:
            ax.axvline(c[budget_key] / scale, color=color, lw=0.8, ls=":")
        # hollow, distinct and shrinking markers drawn later on top: a pick shared by budgets shows all
        ax.errorbar([c[cost] / scale], [c["score"]], yerr=[c.get("std", 0.0)], fmt=markers[k % len(markers)],
                    ms=max(5, 14 - 3 * k), mfc="none", mew=1.6, color=color, zorder=3 + k,
                    label=f"chosen ≤ {c.get('target') or fmt_count(c['budget'])}")
    ax.set_xlabel(axis)
    ax.set_ylabel(f"proxy score ({metric})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_curves(metrics: list[dict], path: str | Path, title: str = "training") -> Path:
    """Loss, accuracy and learning rate against the step, the sampling phase shaded."""
    metrics = [m for m in metrics if "lr" in m]  # training records (not the test records of retraining)
    steps = [m["step"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key in zip(axes, ("loss", "acc", "lr")):
        ax.plot(steps, [m[key] for m in metrics], lw=1.0)
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        phase = [m["step"] for m in metrics if m.get("phase") == "sampling"]
        if phase:
            ax.axvspan(min(phase), max(phase), color="tab:orange", alpha=0.12, label="sampling phase")
    if any(m.get("phase") == "sampling" for m in metrics):
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no cheaper (or equally cheap) point beats in accuracy, by cost."""
    front, best = [], -float("inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_baselines(table: dict, path: str | Path) -> Path:
    """Test top-1 against measured latency (left) and MAdds (right) of every network of a
    baselines table (``stnas.pipeline.baselines``): stnas's picks and the baselines, each
    with its front (the best top-1 at or below each cost); error bars: sd over seeds."""
    rows = {}
    for b in table["budgets"]:
        for r in b["rows"]:
            rows.setdefault(r.get("arch") or r["key"], r)
    lat = table["latency_settings"]
    costs = [(lambda r: r["measured_latency"]["median_ms"],
              f"measured latency (ms; {lat['runtime']} on {lat['device']}, batch {lat['batch']})"),
             (lambda r: r["madds"] / 1e6, "MAdds (M)")]
    groups = [("stnas picks", "searched", "*", "tab:red"), ("baselines as defined", "defined", "o", "tab:blue"),
              ("baselines adapted", "adapted", "s", "tab:green")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (cost, xlabel) in zip(axes, costs):
        for label, form, marker, color in groups:
            rs = [r for r in rows.values() if r["form"] == form]
            if rs:
                ax.errorbar([cost(r) for r in rs], [r["top1"] for r in rs], yerr=[r["top1_sd"] or 0 for r in rs],
                            fmt=marker, color=color, ms=9 if form == "searched" else 5, label=label, zorder=3)
            for r in rs:
                ax.annotate("stnas" if form == "searched" else r["name"].split(" adapted")[0], (cost(r), r["top1"]),
                            fontsize=5, xytext=(3, 2), textcoords="offset points", color="0.3")
        right = max(cost(r) for r in rows.values())
        for label, kind, color in (("stnas front", "stnas", "tab:red"), ("baseline front", "baseline", "tab:blue")):
            front = _front([(cost(r), r["top1"]) for r in rows.values() if r["kind"] == kind])
            if front:  # drawn on to the costliest network, so that a front of one point shows
                front.append((right, front[-1][1]))
                ax.step([x for x, _ in front], [y for _, y in front], where="post", color=color, lw=1, ls="--",
                        label=label, zorder=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test top-1 (after BN recalibration)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)
