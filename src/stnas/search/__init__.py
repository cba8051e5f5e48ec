"""The constrained search: evolution and random search under budgets (evolution), its
history, Pareto front and per-budget choice on disk (history)."""
