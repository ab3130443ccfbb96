"""Pure computation of the platform, by domain.

No module here imports `dagster`. The one exception is the training entrypoint
(`ml.training.train` and its reporter `ml.training.progress`), which speaks the Pipes
protocol through `dagster_pipes` only, so it runs the same under Dagster, under DVC and
standalone. An import-linter contract in `pyproject.toml` keeps it so.
"""
