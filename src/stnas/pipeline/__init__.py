"""The pipeline: the run config (config, checks) and the settings it turns into (settings),
and the stages that read it — supernet, search, retrain, export, latency, run, report,
plots. Only this package and the CLI read the run config."""
