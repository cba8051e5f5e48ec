"""Analysis of rankings: Kendall τ and Spearman ρ with one NaN convention, fidelity against a
truth, stability across checkpoints (ranking)."""
