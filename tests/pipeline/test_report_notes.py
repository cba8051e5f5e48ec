"""The report's flags and plot markers (stnas.pipeline.report, stnas.pipeline.plots)."""

import matplotlib.pyplot as plt

from stnas.pipeline import plots
from stnas.pipeline.report import budget_notes


def _pick(budget, arch, madds):
    return {"budget": budget, "arch": arch, "madds": madds, "params": 1, "score": 0.5, "std": 0.01}


def test_budget_notes_flag_shared_and_underused_picks():
    notes = budget_notes([_pick(300_000, "a", 280_000), _pick(200_000, "a", 180_000), _pick(1_000_000, "b", 250_000)])
    assert notes == ["≤ 300.0K: the same architecture as ≤ 200.0K (one retrained model serves both)",
                     "≤ 1.00M: the pick uses only 25% of its budget (search.budget_floor=0.85 searches within "
                     "[0.85 B, B])"]
    assert budget_notes([_pick(200_000, "a", 150_000), _pick(300_000, "b", 290_000)]) == []


def test_pareto_plot_keeps_every_marker_visible(monkeypatch, tmp_path):
    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=120: figs.append(fig) or path)
    same = {"arch": "a", "madds": 180_000, "params": 1, "score": 0.5, "std": 0.01}
    history = [dict(same, generation=0)]
    plots.plot_pareto(history, history, [dict(same, budget=200_000), dict(same, budget=300_000)], tmp_path / "p.png")
    ax = figs[0].axes[0]
    front = next(ln for ln in ax.get_lines() if ln.get_label().startswith("Pareto front"))
    assert front.get_marker() == "o"  # a one-point front still shows
    stars = [ln for ln in ax.get_lines()
             if ln.get_label().startswith("_") and ln.get_marker() not in (None, "None", "")]
    picks = [(ln.get_marker(), ln.get_markersize(), ln.get_markerfacecolor()) for ln in stars]
    assert len({m for m, _, _ in picks}) == 2 and all(fc == "none" for _, _, fc in picks)
    plt.close("all")
