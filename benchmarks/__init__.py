"""Benchmark scripts: `python -m benchmarks.run_all` (or `make bench`); each module also runs alone.

Every script measures its baseline in the same run, repeats each measurement and reports
medians and ratios; `--quick` makes a fast smoke run whose numbers mean little.
"""

import warnings

# The assets use beta Dagster parameters (backfill_policy, allow_nonexistent_upstream_partitions);
# their import-time warnings would bury the tables. Set here so it precedes any asset import.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")
